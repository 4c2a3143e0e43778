"""Typed keys under which the aiohttp application holds shared objects."""

from aiohttp import web

from orbiter.http.sniffing import RawRouter
from orbiter.node import Node

NODE = web.AppKey("node", Node)
#: Routers that may take a connection before aiohttp parses it (see http/sniffing.py).
RAW_ROUTERS: web.AppKey[list[RawRouter]] = web.AppKey("raw_routers")
