"""tlcore's bridge to bioio: every format an installed bioio reader plugin reads, opened only
when no native tlcore reader claims the file. The hooks are in :mod:`tlcore_bioio.reader`."""
