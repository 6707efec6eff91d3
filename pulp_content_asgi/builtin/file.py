"""pulp_file (shipped inside pulpcore): publications and the generic resolution order."""

HANDLERS = {"file.FileDistribution": "pulp_content_asgi.plugin.handlers.DistributionHandler"}
