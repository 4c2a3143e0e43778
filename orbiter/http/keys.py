"""Typed keys under which the aiohttp application holds shared objects."""

from aiohttp import web

from orbiter.node import Node

NODE = web.AppKey("node", Node)
