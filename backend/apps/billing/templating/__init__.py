"""The template language of billing messages: the parser, the engine that renders, the
sanitizer that cleans a template as it is saved, the date calculator that builds a message's
variables, the money/date formatting they share and the default templates. Nothing here touches
the database, so the API, the admin preview and the send worker all use the same code and the
tests need no fixtures.

Imports go one way, bottom to top: errors, formatting; parser, text_cleaning; date_calculator,
default_templates; engine; sanitizer (it validates with the engine)."""
