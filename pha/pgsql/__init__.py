"""The pgsql agent's pieces: pure decisions and PostgreSQL I/O."""
