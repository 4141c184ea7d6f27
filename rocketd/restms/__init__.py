"""The RestMS face: feeds, pipes, joins and messages over plain HTTP, in XML and JSON."""
