"""The bound on calls in one `usersecrets.v1.Relay/Batch`: the server refuses a larger batch, and the gateway's
`relay_max_calls` setting cannot exceed it."""

MAX_CALLS = 256
