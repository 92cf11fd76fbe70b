"""Host side: driver, campaigns, results store, command line."""
