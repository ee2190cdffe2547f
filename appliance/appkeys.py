"""The typed keys under which the server keeps its shared parts on the aiohttp application."""

from aiohttp import web

from tracebox.appliance.config import Settings
from tracebox.appliance.ingest import Ingest
from tracebox.appliance.metrics import Metrics
from tracebox.appliance.store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
INGEST = web.AppKey("ingest", Ingest)
