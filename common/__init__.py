"""Small pieces the server, the gateway and the tools share (no business rules here)."""
