package android.security

/** API 33. */
class KeyStoreException(message: String?) : Exception(message) {
    val isTransientFailure: Boolean get() = throw NotImplementedError()
}
