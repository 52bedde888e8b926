"""Text-prompted accompaniment and separation (paper 003, GMSDI): one score model S(y, z, σ) over magnitude
spectra of mixtures and sub-mixtures, conditioned on a frozen sentence embedding of the source labels."""
