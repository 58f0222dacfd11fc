"""Vietnamese and English for people: message catalogs, choosing a reader's language, formats."""
