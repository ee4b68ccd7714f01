#!/bin/sh
# Stands in for LocalStack's Lambda runtime init (a Go binary from a release download, which this
# image cannot fetch): present so that CreateFunction succeeds, and failing if anything runs it.
echo "lambda runtime init is not in this image: functions can be created here, not invoked" >&2
exit 1
