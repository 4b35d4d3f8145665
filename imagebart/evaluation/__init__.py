"""Sample-quality evaluation: feature networks and the metrics computed on their features."""
