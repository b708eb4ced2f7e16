# The two commands of README.md, and the steps they are made of.
SWIFT ?= swift

.PHONY: demo test build bpf fuzz

# Set up a fresh Debian 12 machine and run the demo (needs root).
demo:
	scripts/bootstrap
	$(SWIFT) build -c release --product tlstap
	.build/release/tlstap demo

# Install what the tests need and run every test, unit and end to end.
test:
	scripts/bootstrap --test
	scripts/gen-bpf --check
	$(SWIFT) format lint --strict -r --configuration .swift-format Sources Tests bench Examples Package.swift
	scripts/fuzz 30
	$(SWIFT) build --build-tests
	$(SWIFT) build -c release --product tlstap  # the throughput test runs what users run
	SWIFT=$(SWIFT) scripts/run-tests
	# Debian 12's kernel, its backports' and Debian 11's, under qemu, running the release build
	KERNEL_JOBS=3 KERNEL_TLSTAP=.build/release/tlstap scripts/kernel-matrix 6.1 6.12 5.10

# A longer fuzzing run: make fuzz SECONDS=600
fuzz:
	scripts/fuzz $(or $(SECONDS),300)

# Regenerate the committed skeleton after changing bpf/.
bpf:
	scripts/gen-bpf

build:
	$(SWIFT) build
