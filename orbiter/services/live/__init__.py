"""Live elements (Nevow Athena's model): per-connection Python objects a browser widget calls.

``elements.py`` is what an application subclasses (:class:`LiveElement`,
``@expose``); ``connection.py`` runs one connection's elements and calls both
ways; ``host.py`` loads the mounted element factories. The public names are
re-exported by :mod:`orbiter.live`.
"""
