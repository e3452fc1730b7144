"""Prebuilt results instead of training: downloads are untrusted input.

    download        - robust download (retries, resume, sha256), http(s), file:// and gdrive:
    gdrive          - Google Drive's download URL and large-file confirmation page
    safe_extract    - zip extraction that never trusts the archive
    scratch         - an import's scratch folder: removed on every exit, stale ones cleaned
    pickle_bounds   - the work of reading a pickle bounded by the file's size
    authors_pickle  - the authors' results.npy read without running pickled code
    authors_model   - the authors' .pt state dicts: bounded, weights-only, renamed
    authors_format  - the authors' run layout converted into our run directories
    bundle          - our own result bundles: pack and verified unpack
"""
