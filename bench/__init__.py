"""dwtrio benchmark harness: ``python -m bench <subcommand>`` (outside pytest)."""
