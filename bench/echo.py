"""Echo handler for the benchmark (``bench/run.py``).

Placeholder: to be written against empc's handler API.  It must answer each
chat message with a chat message carrying the same id and body, to/from
swapped; the harness matches replies by id.
"""
