package androidx.lifecycle

import android.app.Application
import kotlinx.coroutines.CoroutineScope

abstract class Lifecycle {
    abstract val currentState: State
    abstract fun addObserver(observer: LifecycleObserver)
    abstract fun removeObserver(observer: LifecycleObserver)

    enum class State {
        DESTROYED, INITIALIZED, CREATED, STARTED, RESUMED;
        fun isAtLeast(state: State): Boolean = compareTo(state) >= 0
    }

    enum class Event { ON_CREATE, ON_START, ON_RESUME, ON_PAUSE, ON_STOP, ON_DESTROY, ON_ANY }
}

interface LifecycleObserver

fun interface LifecycleEventObserver : LifecycleObserver {
    fun onStateChanged(source: LifecycleOwner, event: Lifecycle.Event)
}

interface LifecycleOwner {
    val lifecycle: Lifecycle
}

abstract class ViewModel

open class AndroidViewModel(application: Application) : ViewModel() {
    fun <T : Application> getApplication(): T = throw NotImplementedError()
}

val ViewModel.viewModelScope: CoroutineScope get() = throw NotImplementedError()
