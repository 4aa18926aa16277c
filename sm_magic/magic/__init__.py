"""The IPython surface: `%%sagemaker_train`, `%sagemaker_config`, `%sagemaker_jobs`, `%sagemaker_attach`,
`%sagemaker_logs`, `%sagemaker_stop` and `%%sagemaker_include` (magics.py, sweep.py).

A surface on top: may import every layer below; nothing imports it but the package's
`load_ipython_extension`.
"""
