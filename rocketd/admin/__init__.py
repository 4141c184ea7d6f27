"""
The admin side: the admin HTTP API (L{rocketd.admin.api}) served on its own
listener, and the C{rocketctl} command line client (L{rocketd.admin.cli}).
"""
