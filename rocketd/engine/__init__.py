"""The routing engine: feeds route, joins match, pipes hold.

Nothing in this package imports a protocol face, the admin side or the
entry point; the faces talk to an engine only through
L{rocketd.interfaces}.
"""
