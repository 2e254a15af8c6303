"""AWS: provider settings, boto3 clients, ACM placement and the AWS targets."""
