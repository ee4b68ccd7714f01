"""``vitalstream cost``: the monthly bill of a deployment, every line itemised.

- ``data``: the price file (``prices.json``, dated, with its source pages) and the measured figures
  (``measured.json``, or a demo report);
- ``model``: the deployment's inputs, a bill's lines; ``ingest`` and ``processing``: the lines per
  service; ``bill``: the bill of a deployment;
- ``command``: the command line; ``docs``: the tables of docs/cost.md;
- ``counts``: a run's request counts per 1,000 records (the demo report's accounting).
"""
