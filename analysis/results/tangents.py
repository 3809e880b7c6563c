"""The names of the tangent estimates (measures column `tangent`; docs/method.md, "Tangent
estimators"), defined once for the measuring side (trainables/measure/tangent_estimators.py)
and the tables that read them."""

AE, AE_SEED1, DENOISER_JACOBIAN, LOCAL_PCA, EXACT = (
    "ae", "ae-seed1", "denoiser-jacobian", "local-pca", "exact",
)  # fmt: skip
ESTIMATORS = (AE, AE_SEED1, DENOISER_JACOBIAN, LOCAL_PCA, EXACT)
# The headline estimate (trials.rho2 and on/off sensitivity): the paper's estimator, the
# autoencoder of seed 0, on every dataset, so that headline figures stay comparable with the
# paper and across datasets (exact tangents exist only on the oracle sets); the measures rows
# under every other estimate show how far each figure moves.
HEADLINE = AE
