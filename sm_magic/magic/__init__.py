"""The IPython surface: `%%sagemaker_train`, `%sagemaker_config`, `%sagemaker_jobs`, `%sagemaker_attach`,
`%sagemaker_logs`, `%sagemaker_stop` and `%%sagemaker_include`.

magics.py is the Magics class and its line parsing; follow.py follows a live handle (a Job or a
Sweep) under a cell, with what differs between the two in views.py; sweep.py runs a `--sweep`
cell, edit.py the `--edit` form, listing.py `%sagemaker_jobs`'s table. Imports inside point one
way: magics -> sweep, edit, listing -> follow -> views.

A surface on top: may import every layer below; nothing imports it but the package's
`load_ipython_extension`.
"""
