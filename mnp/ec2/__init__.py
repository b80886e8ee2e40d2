"""EC2 compute environments: what AWS Batch's ``computeResources`` mean, which instances to
launch for a demand, the user data and launch template an instance starts from, and what the
agent on an instance learns from its metadata service. Everything here except the provider
itself is pure or takes its boto3 client as an argument, so it is tested without AWS."""
