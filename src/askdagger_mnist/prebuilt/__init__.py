"""Prebuilt results instead of training: downloads are untrusted input.

    download        - robust download (retries, resume, sha256), http(s), file:// and gdrive:
    gdrive          - Google Drive's download URL and large-file confirmation page
    safe_extract    - zip extraction that never trusts the archive
    authors_pickle  - the authors' results.npy read without running pickled code
    authors_format  - the authors' run layout converted into our run directories
    bundle          - our own result bundles: pack and verified unpack
"""
