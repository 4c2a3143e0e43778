"""orbiter's config: the checked TOML file and the seeds' INI, read into one structure.

:mod:`~orbiter.config.settings` reads the TOML tables into :class:`Config`
(the ``[stomp]`` table through :mod:`~orbiter.config.stomp`, the TCP ones
through :mod:`~orbiter.config.tcp`, each value through
:mod:`~orbiter.config.values`); :mod:`~orbiter.config.ini` reads the seeds'
INI files into the same structure.
"""
