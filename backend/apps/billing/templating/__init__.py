"""Pure helpers for billing messages: the template engine, the sanitizer, the date calculator
and the money/date formatting they share. Nothing here touches the database, so the API, the
admin preview and the send worker all use the same code and the tests need no fixtures."""
