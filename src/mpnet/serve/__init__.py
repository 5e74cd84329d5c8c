"""``mpnet serve``: the Prometheus exporter's web server (aiohttp).

:mod:`.app` is the application (``/probe``, ``/metrics``) and its runner, :mod:`.status` the
pages for a person (``/``, ``/recent``), :mod:`.listen` the ``--listen`` address. The probes
themselves are planned and run by :mod:`mpnet.probe.exporter`.
"""
