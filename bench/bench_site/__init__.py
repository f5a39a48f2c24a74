"""A bench-only Django site: the product's settings and routes plus one bare view, so the API
benchmark can measure, in the same server and the same run, how fast plain Django writes the
same rows as a one-contact send. Never deployed (it lives under bench/, outside backend/)."""
