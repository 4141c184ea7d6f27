"""HTTP plumbing shared by both faces: bounded request bodies and server-sent events."""
