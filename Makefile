# The two commands: `make run` (the whole system) and `make test` (every test).
.PHONY: run test services stop status
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
services:
	bash scripts/services.sh up
stop:
	bash scripts/services.sh down
status:
	bash scripts/services.sh status
