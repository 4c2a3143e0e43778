"""Typed keys under which the aiohttp application holds shared objects."""

from aiohttp import web

from orbiter.node import Node
from orbiter.transports.sniffing import RawRouter

NODE = web.AppKey("node", Node)
#: Routers that may take a connection before aiohttp parses it (see transports/sniffing.py).
RAW_ROUTERS: web.AppKey[list[RawRouter]] = web.AppKey("raw_routers")
