# clusteringsdf_ros: the two commands users need, and the pieces behind them.
#   make test    set up what is missing, then run the whole test suite
#   make demo    set up what is missing, then run the demo job (scene -> rosbag -> mapping node -> metrics)
# Set-up (scripts/setup.sh) is idempotent: it re-runs a step only when its inputs changed.

SHELL := /bin/bash
ENV := scripts/env.sh
PYTEST_ARGS ?=

.PHONY: setup test demo clean distclean

setup:
	@bash scripts/setup.sh

test: setup
	@CLUSTERINGSDF_REQUIRE_ROS=1 $(ENV) python -m pytest $(PYTEST_ARGS)

demo: setup
	@ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds_loopback.xml \
	  $(ENV) clusteringsdf ros demo --out outputs/demo

clean:
	rm -rf build install log .pytest_cache

distclean: clean
	rm -rf "$$(readlink -f .venv)" .venv outputs
