"""rocketd: real-time messaging over plain HTTP (RestMS and WebRocket) on Twisted."""

__version__ = "0.1.0"
