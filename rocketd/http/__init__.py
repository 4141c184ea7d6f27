"""
HTTP plumbing shared by both faces: the sites and what a client may hold
of a listener (bounded bodies, head deadlines, connection caps, the Host
check, the last-resort 500), the path space, the one table of error
statuses, and the stream machinery (SSE, the flow-controlled pipe
consumer, end-of-turn coalescing, direct socket writes).
"""
