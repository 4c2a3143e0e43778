"""The client session: one conversation in the native protocol, whatever the transport."""
