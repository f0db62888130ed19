"""Settings for the whole test suite."""

from hypothesis import settings

# No timing thresholds in tests: on the shared 2-core machine one example of a property test
# took 280 ms under load and failed Hypothesis' default 200 ms deadline.
settings.register_profile("anpr", deadline=None)
settings.load_profile("anpr")
