"""URL shortener: a naive variant (collision-checked random codes, a database read and write on every
redirect) and a hardened one (pre-generated key pool, cache-aside Redis, clicks counted off the hot path),
behind one HTTP contract."""
