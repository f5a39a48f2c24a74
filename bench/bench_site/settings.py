"""The product's settings, with the bench's URLconf (the product's routes + the bare view)."""
from config.settings import *  # noqa: F403  (the bench measures the product as configured)

ROOT_URLCONF = "bench_site.urls"
