"""
The WebRocket face: vhosts with access tokens (L{vhosts}), single-use
browser tokens (L{tokens}), the backend worker pool on the engine's rotator
feeds (L{workers}) and the backend HTTP API (L{backend}).
"""
