# The two commands of README.md, and the steps they are made of.
SWIFT ?= swift

.PHONY: demo test build bpf

# Set up a fresh Debian 12 machine and run the demo (needs root).
demo:
	scripts/bootstrap
	$(SWIFT) build -c release --product tlstap
	.build/release/tlstap demo

# Install what the tests need and run every test, unit and end to end.
test:
	scripts/bootstrap --test
	scripts/gen-bpf --check
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Regenerate the committed skeleton after changing bpf/.
bpf:
	scripts/gen-bpf

build:
	$(SWIFT) build
