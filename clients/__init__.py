"""Real package clients against Pulp's content, through the front door (``make clients``)."""
