package android.security.keystore

import java.security.spec.AlgorithmParameterSpec

class KeyGenParameterSpec private constructor() : AlgorithmParameterSpec {
    class Builder(keystoreAlias: String, purposes: Int) {
        fun setAlgorithmParameterSpec(spec: AlgorithmParameterSpec): Builder = this
        fun setDigests(vararg digests: String): Builder = this
        fun setAttestationChallenge(attestationChallenge: ByteArray?): Builder = this
        fun setUserAuthenticationRequired(required: Boolean): Builder = this
        fun setInvalidatedByBiometricEnrollment(invalidateKey: Boolean): Builder = this
        fun setIsStrongBoxBacked(isStrongBoxBacked: Boolean): Builder = this
        fun setUserAuthenticationParameters(timeout: Int, type: Int): Builder = this
        @Deprecated("API 30")
        fun setUserAuthenticationValidityDurationSeconds(seconds: Int): Builder = this
        fun build(): KeyGenParameterSpec = throw NotImplementedError()
    }
}

class KeyPermanentlyInvalidatedException : java.security.InvalidKeyException()

class StrongBoxUnavailableException : java.security.ProviderException()

object KeyProperties {
    const val PURPOSE_SIGN = 4
    const val DIGEST_SHA256 = "SHA-256"
    const val AUTH_BIOMETRIC_STRONG = 2
    const val KEY_ALGORITHM_EC = "EC"
}
