package android.content

import android.content.pm.PackageManager

abstract class Context {
    open val applicationContext: Context get() = throw NotImplementedError()
    open val packageManager: PackageManager get() = throw NotImplementedError()
    fun getString(resId: Int): String = throw NotImplementedError()
}
