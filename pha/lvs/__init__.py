"""The LVS director's logic apart from its agent (ocf:pha:lvsdr).

`plan` holds the pure decisions (which names may become real servers, at which address
and weight, lag draining); `sources` asks the world (scripts, Pacemaker, the primary,
the resolver) for the candidates.
"""
