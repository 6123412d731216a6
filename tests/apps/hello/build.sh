#!/bin/sh
# The build step of the sample app: its "assets" (the tests make it fail by replacing it).
set -e
echo "assets of version $(cat VERSION)" > assets.txt
