# The least a deployment names: its project, and the version it ships (the
# release's, e.g. the commit). Everything else has a default (variables.tf).
project        = "my-swarming-project"
server_version = "v1"
