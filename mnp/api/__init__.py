"""The head node's HTTP side: the app, the native routes and AWS's wire protocols."""
