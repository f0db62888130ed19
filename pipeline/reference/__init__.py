"""Reference data and pure rules shared by every stage: the site registry, plate normalisation,
passage grouping and the fast id hashes."""
