package androidx.biometric

import android.content.Context
import androidx.fragment.app.FragmentActivity
import java.security.Signature
import java.util.concurrent.Executor

class BiometricManager private constructor() {
    fun canAuthenticate(authenticators: Int): Int = throw NotImplementedError()

    object Authenticators {
        const val BIOMETRIC_STRONG = 0x000F
    }

    companion object {
        const val BIOMETRIC_SUCCESS = 0
        const val BIOMETRIC_STATUS_UNKNOWN = -1
        const val BIOMETRIC_ERROR_NONE_ENROLLED = 11
        fun from(context: Context): BiometricManager = throw NotImplementedError()
    }
}

class BiometricPrompt(activity: FragmentActivity, executor: Executor, callback: AuthenticationCallback) {
    fun authenticate(info: PromptInfo, crypto: CryptoObject) {}
    fun cancelAuthentication() {}

    class PromptInfo private constructor() {
        class Builder {
            fun setTitle(title: CharSequence): Builder = this
            fun setDescription(description: CharSequence?): Builder = this
            fun setNegativeButtonText(text: CharSequence): Builder = this
            fun setAllowedAuthenticators(authenticators: Int): Builder = this
            fun setConfirmationRequired(required: Boolean): Builder = this
            fun build(): PromptInfo = throw NotImplementedError()
        }
    }

    class CryptoObject(val signature: Signature)

    class AuthenticationResult private constructor()

    abstract class AuthenticationCallback {
        open fun onAuthenticationError(errorCode: Int, errString: CharSequence) {}
        open fun onAuthenticationSucceeded(result: AuthenticationResult) {}
        open fun onAuthenticationFailed() {}
    }

    companion object {
        const val ERROR_CANCELED = 5
        const val ERROR_LOCKOUT = 7
        const val ERROR_LOCKOUT_PERMANENT = 9
        const val ERROR_USER_CANCELED = 10
        const val ERROR_NO_BIOMETRICS = 11
        const val ERROR_NEGATIVE_BUTTON = 13
        const val ERROR_TIMEOUT = 3
    }
}
