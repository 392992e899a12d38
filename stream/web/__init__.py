"""The HTTP side of a worker (Faust web, ``--web-port``): event collector, visit lookup, tracker
script, metrics and status. Views are found by Faust's autodiscovery."""
