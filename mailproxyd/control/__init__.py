"""The control socket (reference §17): protocol, trio server and a blocking client.

``protocol`` is pure (a line in, a request or an error out); ``server`` binds the UNIX socket and
checks the peer's uid; ``client`` is what the CLI uses to talk to a running node.
"""
