"""A small EC2 instance simulator for tests: real servers on 127.0.0.1 standing in for what
an instance sees (its metadata service), so mnp's EC2 code runs its real network paths."""
